//! systemd service notifications (`sd_notify(3)`, the `sd-notify` crate) for
//! `Type=notify` units (systemd/braid-agent.service, braid-receiver@.service):
//! `READY=1`, `STATUS=…` (shown by `systemctl status`), `WATCHDOG=1` and
//! `STOPPING=1`.
//!
//! Everything here is a no-op when the process was not started by systemd (no
//! `NOTIFY_SOCKET`), so the same binary runs from a shell, from tests and under
//! systemd. A failed send is logged once and otherwise ignored: notifications
//! never stop the agent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

static SEND_FAILED: AtomicBool = AtomicBool::new(false);

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        if !SEND_FAILED.swap(true, Ordering::Relaxed) {
            tracing::warn!("sd_notify to $NOTIFY_SOCKET failed: {e}");
        }
    }
}

/// `READY=1` with a `STATUS=` line: start-up is finished (systemd stops waiting
/// in `systemctl start`).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
}

/// `STATUS=…`: a one-line state for `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(&one_line(status))]);
}

/// `STOPPING=1`: the graceful stop has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The watchdog period systemd asked for (`WATCHDOG_USEC`, `WatchdogSec=` of
/// the unit), `None` when the watchdog is off.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// When systemd enabled the watchdog, spawn a task on `tracker` that sends
/// `WATCHDOG=1` every half period until `cancel` fires. The task runs on the
/// agent's tokio runtime, so a runtime that stops making progress (every
/// worker blocked) misses its pings and systemd restarts the service
/// (`Restart=always`). Returns the period used.
pub fn spawn_watchdog(tracker: &TaskTracker, cancel: CancellationToken) -> Option<Duration> {
    let period = watchdog_period()?;
    let every = (period / 2).max(Duration::from_millis(50));
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => send(&[NotifyState::Watchdog]),
            }
        }
    });
    tracing::debug!("systemd watchdog: {period:?}, pinging every {every:?}");
    Some(period)
}

/// A status must be one line (the protocol is newline-separated).
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if line.len() > 400 {
        let mut cut = 400;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_one_bounded_line() {
        assert_eq!(one_line("a\nb\rc"), "a b c");
        let long = "é".repeat(500);
        let cut = one_line(&long);
        assert!(cut.len() <= 404 && cut.ends_with('…'));
    }
}
