//! Small helpers shared by the roles: wall-clock time, CPU time from `/proc`, JSON lines.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Now as UNIX time in ms (fractional).
pub fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// CPU time (user, system) of process `pid` in ms from `/proc/<pid>/stat` (fields 14
/// and 15, USER_HZ = 100 ticks/s on Linux). `None` when the process is gone.
pub fn cpu_ms(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .map(|t| t * 10.0)
    };
    Some((tick(11)?, tick(12)?))
}

/// Print one JSON line on stdout and flush (the roles' protocol with the suite).
pub fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}").and_then(|_| out.flush());
}

/// Spawn a thread that sets `flag` when standard input reaches end of file (the suite
/// closes a role's stdin to stop it).
pub fn watch_stdin_eof(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}

/// Set `pipeline` to PLAYING; on failure, the text of the element error that caused it
/// (e.g. a port already in use) and the pipeline back in NULL.
pub fn play(pipeline: &gst::Pipeline) -> Result<(), String> {
    use gst::prelude::*;
    if pipeline.set_state(gst::State::Playing).is_ok() {
        return Ok(());
    }
    let bus = pipeline.bus();
    let mut text = "state change to PLAYING failed".to_owned();
    while let Some(msg) = bus.as_ref().and_then(|b| b.pop()) {
        if let gst::MessageView::Error(e) = msg.view() {
            text = format!(
                "{}: {} ({:?})",
                e.src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default(),
                e.error(),
                e.debug()
            );
            break;
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    Err(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_is_readable() {
        // Burn a little CPU so the counters move.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let (user, sys) = cpu_ms(std::process::id()).expect("own /proc stat");
        assert!(user + sys > 0.0);
        assert!(cpu_ms(u32::MAX).is_none());
    }
}
