//! The receiver role (`braid-bench recv`): one receiver pipeline in this process,
//! measuring its output with [`crate::metrics::OutputMeter`] until standard input
//! closes, then printing one `summary` JSON line (the output report, the receiver's
//! own statistics, errors).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use gst::prelude::*;
use serde_json::{json, Value};

use crate::gstjson::structure_to_json;
use crate::metrics::OutputMeter;
use crate::systems::{self, System};
use crate::util::{emit, play, unix_ms, watch_stdin_eof};

/// Run a receiver until stdin closes (with `stdin_eof`) or `duration` has passed.
pub fn run(
    system: System,
    listen: &[SocketAddr],
    latency_ms: u32,
    stdin_eof: bool,
    duration: Option<std::time::Duration>,
) -> Result<()> {
    crate::init_gst()?;
    let description = systems::receiver_description(system, listen, latency_ms);
    let pipeline = gst::parse::launch(&description)
        .with_context(|| format!("parsing {description}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
    let meter = Arc::new(Mutex::new(OutputMeter::new()));
    {
        let meter = meter.clone();
        let out = pipeline.by_name("out").context("no out element")?;
        out.static_pad("sink").context("out sink pad")?.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, info| {
                let now = unix_ms();
                let mut m = meter.lock().unwrap();
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => {
                        if let Ok(map) = b.map_readable() {
                            m.push(now, &map);
                        }
                    }
                    Some(gst::PadProbeData::BufferList(l)) => {
                        for b in l.iter() {
                            if let Ok(map) = b.map_readable() {
                                m.push(now, &map);
                            }
                        }
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    if stdin_eof {
        watch_stdin_eof(stop.clone());
    }
    let deadline = duration.map(|d| std::time::Instant::now() + d);
    let bus = pipeline.bus().context("bus")?;
    if let Err(e) = play(&pipeline) {
        emit(&json!({"event": "summary", "errors": [format!("receiver did not start: {e}")]}));
        anyhow::bail!("receiver did not start: {e}");
    }
    emit(&json!({"event": "started", "unix_ms": unix_ms(), "pipeline": description}));

    let mut errors = Vec::<String>::new();
    let mut last_stats: Option<Value> = None;
    while !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| std::time::Instant::now() < d) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Error(e) => {
                errors.push(format!(
                    "{}: {} ({:?})",
                    e.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default(),
                    e.error(),
                    e.debug()
                ));
                break;
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == "ristbond-stats") {
                    last_stats = Some(structure_to_json(s));
                }
            }
            _ => {}
        }
    }
    let receiver_stats = match system {
        System::GstRr | System::GstBroadcast | System::RistSingle => pipeline
            .by_name("rx")
            .map(|rx| structure_to_json(&rx.property::<gst::Structure>("stats"))),
        _ => last_stats,
    };
    let _ = pipeline.set_state(gst::State::Null);
    let report = meter.lock().unwrap().report();
    emit(&json!({
        "event": "summary",
        "output": report,
        "receiver_stats": receiver_stats,
        "errors": errors,
    }));
    Ok(())
}
