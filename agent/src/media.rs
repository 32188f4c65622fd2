//! GStreamer set-up shared by the agent and the development control plane, and the
//! verification of a received MPEG-TS.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use gst::prelude::*;
use ristbond_core::ts::ContinuityChecker;

/// Initialise GStreamer once and make Braid's elements available: if `ristbondsink`
/// (plugin `ristbond`) or `braidthumbnail` (plugin `braidthumbnail`) is not found in
/// the registry (no installed plugin, no `GST_PLUGIN_PATH`), the plugin linked into
/// this binary is registered statically. Idempotent: later calls return the first
/// call's result at once.
///
/// `braid-agent run` calls this at the first `stream.start`, not at start-up: the
/// registry GStreamer loads describes every installed plugin feature (about 2.5 MiB
/// of heap on a desktop-sized plugin set), which an idle sender has no use for
/// (docs/benchmarks.md, "Agent idle footprint").
/// Errors: GStreamer cannot initialise, or a built-in plugin cannot be registered.
pub fn init() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| init_once().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn init_once() -> anyhow::Result<()> {
    gst::init().context("GStreamer initialisation failed")?;
    if gst::ElementFactory::find("ristbondsink").is_none() {
        gstristbond::plugin_register_static()
            .context("registering the built-in ristbond plugin failed")?;
    }
    if gst::ElementFactory::find("braidthumbnail").is_none() {
        gstbraidthumbnail::plugin_register_static()
            .context("registering the built-in braidthumbnail plugin failed")?;
    }
    tracing::info!("GStreamer {} initialised", gst::version_string());
    Ok(())
}

/// What [`verify_ts`] found in a received file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsVerdict {
    /// Video frames decoded.
    pub frames: u64,
    /// TR 101 290 1.4 continuity errors.
    pub cc_errors: u64,
    /// TS packets in the file.
    pub ts_packets: u64,
    /// Size of the file, bytes.
    pub bytes: u64,
}

/// Longest a decode of a received file may take before it is called stuck.
const DECODE_TIMEOUT: Duration = Duration::from_secs(120);

/// Decode the video of a TS file (GStreamer `decodebin`) counting frames, and run the
/// TR 101 290 continuity check over its packets.
/// Errors: unreadable file, a file that is not MPEG-TS (sync errors), a decode error,
/// no decodable video.
pub fn verify_ts(path: &Path) -> anyhow::Result<TsVerdict> {
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("cannot open received TS {}", path.display()))?;
    let mut checker = ContinuityChecker::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 188 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        checker.push(&buf[..n]);
    }
    let report = checker.report();
    if report.sync_errors > 0 {
        bail!(
            "{} is not a clean MPEG-TS: {} sync byte errors in {} packets",
            path.display(),
            report.sync_errors,
            report.packets
        );
    }
    let frames = count_video_frames(path)?;
    if frames == 0 {
        bail!("{} has no decodable video frames", path.display());
    }
    Ok(TsVerdict {
        frames,
        cc_errors: report.cc_errors,
        ts_packets: report.packets,
        bytes,
    })
}

/// Decode every video frame of `path` as fast as possible and count them.
fn count_video_frames(path: &Path) -> anyhow::Result<u64> {
    init()?;
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_string_lossy().as_ref())
        .build()?;
    let dec = gst::ElementFactory::make("decodebin").build()?;
    pipeline.add_many([&src, &dec])?;
    src.link(&dec)?;

    let frames = Arc::new(AtomicU64::new(0));
    let pipeline_weak = pipeline.downgrade();
    let counter = frames.clone();
    dec.connect_pad_added(move |_, pad| {
        let Some(pipeline) = pipeline_weak.upgrade() else {
            return;
        };
        let is_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        let Ok(sink) = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
        else {
            return;
        };
        if pipeline.add(&sink).is_err() {
            return;
        }
        let _ = sink.sync_state_with_parent();
        if is_video {
            let counter = counter.clone();
            if let Some(sinkpad) = sink.static_pad("sink") {
                sinkpad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                });
            }
        }
        let _ = pad.link(&sink.static_pad("sink").expect("fakesink has a sink pad"));
    });

    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().expect("pipeline has a bus");
    let result = match bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(DECODE_TIMEOUT.as_secs()),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(msg) => match msg.view() {
            gst::MessageView::Eos(_) => Ok(frames.load(Ordering::Relaxed)),
            gst::MessageView::Error(e) => Err(anyhow!(
                "decoding {} failed: {} ({:?})",
                path.display(),
                e.error(),
                e.debug()
            )),
            _ => unreachable!("filtered on EOS and Error"),
        },
        None => Err(anyhow!(
            "decoding {} did not finish within {:?}",
            path.display(),
            DECODE_TIMEOUT
        )),
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}
