//! Where device events go (PROTOCOL.md §6, categories `modem`, `device`, `link`).
//!
//! Every event the device side raises goes through [`EventSink::raise`]; today the
//! sink forwards them, in order, to the stream report channel the control task
//! drains (`StreamReport::Event` → `Control::raise` → the event queue). To move to
//! the persisted event queue, only [`EventSink::new`] changes: give it the queue's
//! sender instead of the report channel.

use braid_protocol::event::Event;
use tokio::sync::mpsc;

use crate::streams::StreamReport;

/// Cheap to clone; [`EventSink::raise`] never blocks and never drops an event
/// while the control task is alive.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: Option<mpsc::UnboundedSender<Event>>,
}

impl EventSink {
    /// Forward events to `reports` (the channel the control task drains), in the
    /// order they were raised. The forwarding task ends when every sink clone is
    /// dropped or the control task is gone.
    pub fn new(reports: mpsc::Sender<StreamReport>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if reports.send(StreamReport::Event(event)).await.is_err() {
                    return;
                }
            }
        });
        Self { tx: Some(tx) }
    }

    /// A sink that only logs (the `devices` command, unit tests).
    pub fn log_only() -> Self {
        Self { tx: None }
    }

    /// Raise an event (logged at info level too).
    pub fn raise(&self, event: Event) {
        tracing::info!(severity = ?event.severity, category = ?event.category, "device event: {}", event.message);
        if let Some(tx) = &self.tx {
            if tx.send(event).is_err() {
                tracing::debug!("device event not delivered: control task gone");
            }
        }
    }
}
