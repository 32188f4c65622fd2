//! The receiving side of a devplane stream: an in-process GStreamer pipeline
//! `ristbondsrc links="rist://@127.0.0.1:P1,…" latency=L ! filesink location=OUT`
//! (docs/elements.md), run and watched on a plain thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context};
use gst::prelude::*;

/// What the receiver saw, read after [`Receiver::finish`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverReport {
    /// `received-packets` per link from the last `ristbond-stats`, link-id order.
    pub link_packets: Vec<u64>,
    /// `packets-delivered` from the last `ristbond-stats`.
    pub delivered: u64,
    /// First pipeline error, if any.
    pub error: Option<String>,
}

/// A running receiver pipeline.
pub struct Receiver {
    pipeline: gst::Pipeline,
    watcher: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    done_rx: mpsc::Receiver<()>,
    report: Arc<Mutex<ReceiverReport>>,
    out: PathBuf,
}

/// The `gst-launch` description of a receiver on `ports` writing to `out`.
pub fn description(ports: &[u16], latency_ms: u32, out: &Path) -> String {
    let links: Vec<String> = ports
        .iter()
        .map(|p| format!("rist://@127.0.0.1:{p}"))
        .collect();
    let location = out
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        "ristbondsrc links=\"{}\" latency={latency_ms} ! filesink location=\"{location}\"",
        links.join(",")
    )
}

impl Receiver {
    /// Build and start the pipeline (blocking; call from a blocking thread).
    /// `crate::media::init()` must have run. Errors: parse or state change failure.
    pub fn start(ports: &[u16], latency_ms: u32, out: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(out);
        let desc = description(ports, latency_ms, out);
        tracing::info!("receiver: {desc}");
        let pipeline = gst::parse::launch(&desc)
            .with_context(|| format!("receiver pipeline `{desc}`"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("receiver description is not a pipeline"))?;
        let bus = pipeline.bus().context("pipeline without bus")?;
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(ReceiverReport::default()));
        let (done_tx, done_rx) = mpsc::channel();
        let watcher = {
            let stop = stop.clone();
            let report = report.clone();
            std::thread::Builder::new()
                .name("devplane-receiver-bus".into())
                .spawn(move || watch(bus, stop, report, done_tx))
                .context("spawning the bus thread")?
        };
        pipeline
            .set_state(gst::State::Playing)
            .context("receiver pipeline to PLAYING")?;
        Ok(Self {
            pipeline,
            watcher: Some(watcher),
            stop,
            done_rx,
            report,
            out: out.to_owned(),
        })
    }

    /// The live report, updated at every `ristbond-stats` (about once a second);
    /// for watching a stream's progress while it runs.
    pub fn report_handle(&self) -> Arc<Mutex<ReceiverReport>> {
        self.report.clone()
    }

    /// Send EOS, wait up to `timeout` for it to reach the file sink, stop the
    /// pipeline. Blocking.
    pub fn finish(mut self, timeout: Duration) -> ReceiverReport {
        self.pipeline.send_event(gst::event::Eos::new());
        if self.done_rx.recv_timeout(timeout).is_err() {
            tracing::warn!("receiver: EOS did not arrive within {timeout:?}");
        }
        self.shutdown();
        let report = self.report.lock().map(|r| r.clone()).unwrap_or_default();
        tracing::info!(out = %self.out.display(), ?report, "receiver finished");
        report
    }

    fn shutdown(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn watch(
    bus: gst::Bus,
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<ReceiverReport>>,
    done: mpsc::Sender<()>,
) {
    while !stop.load(Ordering::SeqCst) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => {
                let _ = done.send(());
            }
            gst::MessageView::Error(e) => {
                let text = format!(
                    "{}: {}",
                    e.src().map(|s| s.name().to_string()).unwrap_or_default(),
                    e.error()
                );
                tracing::error!("receiver: {text}");
                if let Ok(mut r) = report.lock() {
                    r.error.get_or_insert(text);
                }
                let _ = done.send(());
            }
            gst::MessageView::Element(el) => {
                if let Some(s) = el.structure().filter(|s| s.name() == "ristbond-stats") {
                    if let Ok(mut r) = report.lock() {
                        read_stats(s, &mut r);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Read the receiver's `ristbond-stats` (docs/elements.md) into the report.
fn read_stats(s: &gst::StructureRef, r: &mut ReceiverReport) {
    if let Ok(d) = s.get::<u64>("packets-delivered") {
        r.delivered = d;
    }
    if let Ok(links) = s.get::<gst::Array>("links") {
        r.link_packets = links
            .iter()
            .filter_map(|v| v.get::<gst::Structure>().ok())
            .map(|l| l.get::<u64>("received-packets").unwrap_or(0))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_quotes_the_location() {
        assert_eq!(
            description(&[15000, 15002], 500, Path::new("target/demo/a \"b\".ts")),
            r#"ristbondsrc links="rist://@127.0.0.1:15000,rist://@127.0.0.1:15002" latency=500 ! filesink location="target/demo/a \"b\".ts""#
        );
    }
}
