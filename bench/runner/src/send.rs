//! The sender role (`braid-bench send`): one sender pipeline in this process, paced live.
//!
//! Stdout protocol (JSON lines): `started`, then for Braid `link-state` on every state
//! change of a link (from the sink's `ristbond-link-state` messages, or, from sinks
//! without them, from the states in `ristbond-stats`; docs/elements.md), `stats` once
//! a second, `bitrate` when adaptive mode changes the encoder bitrate, and a final
//! `summary` (TS packets and bytes handed to the transport, first/last times, PCR send
//! times, errors, the last transport statistics).
//!
//! Adaptive bitrate (B3): the sink's `available-bitrate` (guint64, bit/s, usable
//! aggregate capacity, in `ristbond-stats`) goes through the agent's controller,
//! `ristbond_core::feedback::BitrateController` (drops followed at once, rises ≤ 10 %/s,
//! `headroom` kept free), which sets x264enc `bitrate` (kbit/s) within [min, max].
//! Without the field the bitrate stays fixed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use gst::prelude::*;
use serde_json::{json, Value};

use crate::gstjson::structure_to_json;
use crate::metrics::{PcrLog, PidEnds};
use crate::systems::{self, Source, System};
use crate::util::{emit, play, unix_ms, watch_stdin_eof};
use ristbond_core::feedback::BitrateController;

/// Settings of one sender run.
#[derive(Debug, Clone)]
pub struct SendArgs {
    /// Transport.
    pub system: System,
    /// Where each link's RTP goes (emulator listen addresses).
    pub dests: Vec<SocketAddr>,
    /// Retransmission buffer / latency (ms).
    pub latency_ms: u32,
    /// `ristbondsink stats-interval` (ms).
    pub stats_interval_ms: u32,
    /// `ristbondsink config` TOML.
    pub braid_config: String,
    /// What to send.
    pub source: Source,
    /// Adaptive bitrate range (kbit/s); `None` = fixed.
    pub adaptive: Option<(u32, u32)>,
    /// Share of `available-bitrate` kept free (the controller's `headroom`, 0–0.9).
    pub headroom: f64,
    /// After EOS reached the transport, keep the pipeline running this long (ms) so
    /// retransmissions can still be answered.
    pub linger_ms: u32,
    /// Stop early when stdin closes.
    pub stdin_eof: bool,
}

/// Run the sender to EOS (or until stdin closes); emits the JSON lines.
pub fn run(args: &SendArgs) -> Result<()> {
    crate::init_gst()?;
    let description = format!(
        "{} ! {}",
        systems::source_description(&args.source),
        systems::sender_transport(
            args.system,
            &args.dests,
            args.latency_ms,
            args.stats_interval_ms
        )
    );
    let pipeline = gst::parse::launch(&description)
        .with_context(|| format!("parsing {description}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
    let tx = pipeline.by_name("tx").context("no tx element")?;
    if args.system == System::Braid && !args.braid_config.is_empty() {
        tx.set_property("config", &args.braid_config);
    }
    let encoder = pipeline.by_name("enc");
    let mux = pipeline.by_name("mux").context("no mux element")?;

    // Count TS handed to the transport; note EOS.
    let ts_bytes = Arc::new(AtomicU64::new(0));
    let first_ms = Arc::new(Mutex::new(None::<f64>));
    let last_ms = Arc::new(Mutex::new(0f64));
    let eos_at = Arc::new(Mutex::new(None::<Instant>));
    let ends = Arc::new(Mutex::new(PidEnds::default()));
    let pcrs = Arc::new(Mutex::new(PcrLog::default()));
    {
        let (ts_bytes, first_ms, last_ms, eos_at, ends, pcrs) = (
            ts_bytes.clone(),
            first_ms.clone(),
            last_ms.clone(),
            eos_at.clone(),
            ends.clone(),
            pcrs.clone(),
        );
        mux.static_pad("src").context("mux src pad")?.add_probe(
            gst::PadProbeType::BUFFER
                | gst::PadProbeType::BUFFER_LIST
                | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let mut size = 0usize;
                let mut note = |b: &gst::BufferRef| {
                    if let Ok(map) = b.map_readable() {
                        ends.lock().unwrap().push(&map);
                        pcrs.lock().unwrap().push(unix_ms(), &map);
                    }
                    b.size()
                };
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => size = note(b),
                    Some(gst::PadProbeData::BufferList(l)) => size = l.iter().map(&mut note).sum(),
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos => {
                        eos_at.lock().unwrap().get_or_insert_with(Instant::now);
                    }
                    _ => {}
                }
                if size > 0 {
                    let now = unix_ms();
                    first_ms.lock().unwrap().get_or_insert(now);
                    *last_ms.lock().unwrap() = now;
                    ts_bytes.fetch_add(size as u64, Ordering::Relaxed);
                }
                gst::PadProbeReturn::Ok
            },
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    if args.stdin_eof {
        watch_stdin_eof(stop.clone());
    }
    let bus = pipeline.bus().context("bus")?;
    if let Err(e) = play(&pipeline) {
        emit(&json!({"event": "summary", "errors": [format!("sender did not start: {e}")]}));
        anyhow::bail!("sender did not start: {e}");
    }
    emit(&json!({"event": "started", "unix_ms": unix_ms(), "pipeline": description}));

    let mut errors = Vec::<String>::new();
    let mut last_stats: Option<Value> = None;
    let mut states: HashMap<u64, String> = HashMap::new();
    let mut last_stats_line = Instant::now() - Duration::from_secs(10);
    let mut bitrate_kbps = match args.source {
        Source::Live { bitrate_kbps, .. } => bitrate_kbps,
        Source::File(_) => 0,
    };
    let mut saw_available = false;
    let mut controller = args
        .adaptive
        .map(|(min, max)| BitrateController::new(bitrate_kbps, min, max, args.headroom));
    let mut link_state_messages = false;
    let linger = Duration::from_millis(u64::from(args.linger_ms));
    loop {
        if stop.load(Ordering::SeqCst) {
            errors.push("stopped by the suite before EOS".into());
            break;
        }
        let eos_since = *eos_at.lock().unwrap();
        // Braid's sink lets EOS through after its own linger; GStreamer's ristsink never
        // posts EOS (TOOLCHAIN.md), so give up waiting for it after the linger.
        if eos_since.is_some_and(|t| t.elapsed() > linger + Duration::from_secs(2)) {
            break;
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break,
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
                let Some(s) = e.structure() else { continue };
                let now = unix_ms();
                if s.name() == "ristbond-link-state" {
                    link_state_messages = true;
                    if let (Ok(id), Ok(to)) = (s.get::<u32>("id"), s.get::<String>("to")) {
                        states.insert(u64::from(id), to.clone());
                        emit(&json!({"event": "link-state", "unix_ms": now, "link": id,
                            "state": to, "from": s.get::<String>("from").ok()}));
                    }
                    continue;
                }
                if s.name() != "ristbond-stats" {
                    continue;
                }
                let j = structure_to_json(s);
                if let Some(links) = j["links"].as_array().filter(|_| !link_state_messages) {
                    for l in links {
                        let (Some(id), Some(state)) = (l["id"].as_u64(), l["state"].as_str())
                        else {
                            continue;
                        };
                        if states.get(&id).map(String::as_str) != Some(state) {
                            states.insert(id, state.to_owned());
                            emit(&json!({"event": "link-state", "unix_ms": now, "link": id,
                                "state": state, "capacity_bps": l["capacity-bps"], "rtt_ms": l["rtt-ms"]}));
                        }
                    }
                }
                if let (Some(ctl), Ok(available)) =
                    (controller.as_mut(), s.get::<u64>("available-bitrate"))
                {
                    saw_available |= available > 0;
                    if let (Some(enc), Some(kbps)) =
                        (&encoder, ctl.update(available, Instant::now()))
                    {
                        enc.set_property("bitrate", kbps);
                        bitrate_kbps = kbps;
                        emit(&json!({"event": "bitrate", "unix_ms": now, "kbps": kbps,
                            "available_bps": available}));
                    }
                }
                if last_stats_line.elapsed() >= Duration::from_secs(1) {
                    last_stats_line = Instant::now();
                    emit(&json!({"event": "stats", "unix_ms": now, "stats": j}));
                }
                last_stats = Some(j);
            }
            _ => {}
        }
    }
    // GStreamer rist: its statistics live in the `stats` property.
    let transport_stats = match args.system {
        System::GstRr | System::GstBroadcast | System::RistSingle => {
            let s: gst::Structure = tx.property("stats");
            Some(structure_to_json(&s))
        }
        _ => last_stats,
    };
    let _ = pipeline.set_state(gst::State::Null);
    let bytes = ts_bytes.load(Ordering::Relaxed);
    let first = *first_ms.lock().unwrap();
    let last = *last_ms.lock().unwrap();
    emit(&json!({
        "event": "summary",
        "ts_packets": bytes / 188,
        "ts_bytes": bytes,
        "first_unix_ms": first,
        "last_unix_ms": last,
        "eos": eos_at.lock().unwrap().is_some(),
        "errors": errors,
        "final_bitrate_kbps": bitrate_kbps,
        "pid_ends": ends.lock().unwrap().clone(),
        "pcr_times": pcrs.lock().unwrap().times,
        "adaptive_feedback_seen": saw_available,
        "transport_stats": transport_stats,
    }));
    Ok(())
}
