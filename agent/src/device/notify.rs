//! Change notification for `device.status` (PROTOCOL.md §4: "within 1 s of a
//! change"): the watchers (modems, network interfaces, capture devices) ping a
//! [`ChangeNotifier`]; the control session waits on the [`watch::Receiver`] of
//! [`ChangeNotifier::subscribe`] and sends a `device.status` each time it moves.
//!
//! Rate limiting, so that a burst (a modem appearing emits a dozen D-Bus signals, a
//! USB hub replug adds several nodes) gives one report and a flapping device cannot
//! flood the uplink: the first ping after a quiet period fires after [`DEBOUNCE`];
//! triggers are at least [`MIN_GAP`] apart; a ping inside the gap is kept and fires
//! when the gap ends. Worst case from a change to its trigger: `MIN_GAP + DEBOUNCE`
//! (650 ms).

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// Quiet time collected after the first ping of a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(150);
/// Least time between two triggers.
pub const MIN_GAP: Duration = Duration::from_millis(500);

/// Cheap to clone; [`ChangeNotifier::ping`] never blocks.
#[derive(Debug, Clone)]
pub struct ChangeNotifier {
    ping: Arc<Notify>,
    triggers: Arc<watch::Sender<u64>>,
}

impl ChangeNotifier {
    /// A notifier and its coalescing task (ends when `cancel` fires).
    pub fn spawn(cancel: CancellationToken) -> Self {
        let ping = Arc::new(Notify::new());
        let triggers = Arc::new(watch::Sender::new(0u64));
        let this = Self {
            ping: ping.clone(),
            triggers: triggers.clone(),
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = ping.notified() => {}
                }
                tokio::time::sleep(DEBOUNCE).await;
                // Pings of the same burst left a permit: consume it, they are covered.
                let _ = ping.notified().now_or_never();
                triggers.send_modify(|n| *n = n.wrapping_add(1));
                tokio::time::sleep(MIN_GAP.saturating_sub(DEBOUNCE)).await;
            }
        });
        this
    }

    /// Something in `device.status` changed (`what` is logged at debug level).
    pub fn ping(&self, what: &str) {
        tracing::debug!("device change: {what}");
        self.ping.notify_one();
    }

    /// A receiver that moves on every trigger. The sender lives as long as any
    /// notifier clone, so `changed()` does not fail while the agent runs.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.triggers.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test]
    async fn bursts_coalesce_and_triggers_are_spaced() {
        let cancel = CancellationToken::new();
        let n = ChangeNotifier::spawn(cancel.clone());
        let mut rx = n.subscribe();
        let t0 = Instant::now();
        for _ in 0..10 {
            n.ping("burst");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("a trigger")
            .unwrap();
        assert!(t0.elapsed() >= DEBOUNCE, "{:?}", t0.elapsed());
        // The burst gave one trigger only (sleeps only ever run late, so a second
        // trigger would have come within MIN_GAP + DEBOUNCE).
        assert!(
            tokio::time::timeout(MIN_GAP * 3, rx.changed())
                .await
                .is_err(),
            "one trigger per burst"
        );
        // A ping right after a trigger waits for the gap.
        n.ping("a");
        rx.changed().await.unwrap();
        let t1 = Instant::now();
        n.ping("b");
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("the second ping is not lost")
            .unwrap();
        assert!(t1.elapsed() >= MIN_GAP - DEBOUNCE, "{:?}", t1.elapsed());
        cancel.cancel();
    }
}
