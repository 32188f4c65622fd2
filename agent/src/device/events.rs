//! Where device events go (PROTOCOL.md §6, categories `modem`, `device`, `link`).
//!
//! Every event the device side raises goes through [`EventSink::raise`], which hands
//! it to the persisted, flap-filtered event queue (`crate::events`, docs/events.md)
//! through an [`EventTx`].

use crate::events::{EventTx, Raise};

/// Cheap to clone; [`EventSink::raise`] never blocks and never drops an event.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: Option<EventTx>,
}

impl EventSink {
    /// Raise into the event queue behind `tx` (`crate::events::Events::tx`).
    pub fn new(tx: EventTx) -> Self {
        Self { tx: Some(tx) }
    }

    /// A sink that only logs (the `devices` command, unit tests).
    pub fn log_only() -> Self {
        Self { tx: None }
    }

    /// Raise an event: a plain `Event` (one-off) or a [`Raise::transition`]
    /// (state change of a subject, flap-filtered). Logged at info level too.
    pub fn raise(&self, event: impl Into<Raise>) {
        let raise = event.into();
        let event = &raise.event;
        tracing::info!(severity = ?event.severity, category = ?event.category, "device event: {}", event.message);
        if let Some(tx) = &self.tx {
            tx.raise(raise);
        }
    }
}
